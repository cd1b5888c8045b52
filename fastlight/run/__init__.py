"""`fastlight run`: the whole compression, stage by stage, in one resumable run folder; `fastlight search`."""
