"""Training: decoders (``train``, on crops streamed by ``dataset``), the paper's pretrained
encoders (``pretrain``), the context model (``context_train``) and its tables (``tables_fit``)."""
