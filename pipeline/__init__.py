"""Ray Data jobs that run annotators over image corpora and write Joint-style datasets."""
