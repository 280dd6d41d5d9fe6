"""One reader per dataset format, each behind :class:`base.DatasetReader`'s contract;
:func:`afmcli.data.datasets.open_dataset` picks the one for a DATA argument."""
