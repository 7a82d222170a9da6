"""Course chapter 4: reranking the two-tower's candidates (cross-encoder, LightGBM lambdarank), two-stage pipeline."""
