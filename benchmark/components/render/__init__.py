"""Multi-view rendering of point clouds: ``camera`` (view recipes, camera fit, projection),
``multiview`` (rendering, visibility, correspondence, back-projection, caching) and the two
backends ``torch_backend`` and ``open3d_backend`` (they import ``camera`` only)."""
