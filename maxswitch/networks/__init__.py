"""The networks and their assets: the exact integer encoder (``encoder``, kernels in
``encoderjit``, the pooling switches of any torch network in ``pooling``), the decoders (``nets``,
configured by ``modelconfig``), tiled inference (``tiling``), decoding on ONNX Runtime
(``fastdecode``, ``onnxgraph``) and the shipped models (``zoo``)."""
