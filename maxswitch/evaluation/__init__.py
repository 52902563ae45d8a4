"""Measurement: ``bench`` (rate and distortion beside JPEG, WebP and PNG), its metrics
(``metrics``), rate-distortion curves and BD-rates (``rd``), tables (``report``) and figures
(``plot``)."""
