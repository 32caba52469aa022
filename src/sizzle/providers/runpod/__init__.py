"""RunPod: on-demand GPU pods through RunPod's GraphQL API."""
