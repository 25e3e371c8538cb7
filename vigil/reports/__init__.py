"""Reports on how well the service keeps its promises: the service-quality report."""
