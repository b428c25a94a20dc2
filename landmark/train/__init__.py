"""Training pieces: evaluation metrics (NME, failure rate, CED/AUC) and the landmark losses."""
