"""The toolkit that methods are built from (one module per idea; import the module you need).

- ``geometry.pointops``: kNN, farthest point sampling, kNN grouping, chamfer, 1-NN propagation,
  inverse-distance interpolation, stride / voxel sub-sampling, centring (pytorch3d when
  installed, otherwise torch/numpy/scipy);
- ``geometry.descriptors``: normals, FPFH, voxel down-sampling (Open3D);
- ``geometry.registration``: RANSAC+FPFH global registration and ICP;
- ``geometry.organized``: organized grid <-> points, map resizing, BTF square padding;
- ``memory_bank``: coresets, fixed-size banks, bounded-memory nearest-neighbour scoring;
- ``blur``: Gaussian blur of score maps (float and BTF's 8-bit variant);
- ``backbones.pointmae`` / ``backbones.pointbert`` / ``backbones.vit`` (DINO ViT-B/8) /
  ``backbones.wide_resnet``: pretrained feature extractors loading the official checkpoints;
- ``render``: multi-view rendering with point <-> pixel correspondence (torch / Open3D backends);
- ``pointcloud_io``: PCD / PLY / TIFF / PNG / GT-text readers and writers.

The toolkit depends only on the contracts (``benchmark.sample``, ``errors``, ...), ``cache`` and
``weights``; never on the run/report pipeline (``tests/test_import_direction.py``).
"""
