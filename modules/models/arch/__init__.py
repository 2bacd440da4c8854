"""Component configs: shipped family config, overlaid with header-shape dims and metadata overrides."""
