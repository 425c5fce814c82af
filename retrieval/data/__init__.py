"""Package data of the retrieval stage: the SysToolKit catalog and the labelled eval set."""
