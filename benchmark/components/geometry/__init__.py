"""Point-set geometry: neighbours and sampling, local descriptors, registration, organized grids."""
