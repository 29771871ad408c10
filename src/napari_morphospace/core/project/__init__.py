"""Folders a user keeps: the analysis folder, annotations, exports, the HTML report, the demo, sweeps and
BioImage Model Zoo packages."""
