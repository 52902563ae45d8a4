"""The file and its payload codings (docs/FORMAT.md): the container (``format``), the parts of a
version-3 payload (``parts``), the switches packed and zstd-coded (``switches``, coding 1), the
learned context model (``context``, ``entropy``, coding 2) and its tables (``tables``,
``tablecoder``, coding 3), and the what part (``what``). Every byte is computed in exact integer
arithmetic; ``*jit`` modules hold the compiled kernels. No torch."""
