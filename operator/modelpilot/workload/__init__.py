"""ModelDeployment -> owned Deployment and Service (pure: validation and rendering)."""
