"""Brian2 data generation: model families, stimuli, vectorised simulation, features, datasets, Dask jobs."""
