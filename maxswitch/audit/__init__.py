"""``maxswitch audit``: how much of an image a network's pooling switches leak. ``run`` drives it,
``model`` loads the network audited, ``decoder`` trains the decoder that reads its switches and
``report`` writes the findings (docs/AUDIT.md)."""
