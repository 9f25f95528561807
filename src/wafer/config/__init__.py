"""What params.yaml and dvc.yaml say: the typed params sections (one frozen dataclass each,
the rules as field metadata), their checks, and the pipeline's paths."""
