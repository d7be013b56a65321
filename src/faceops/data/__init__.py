"""The data layer: versioned face datasets (one folder per identity) and their manifest."""
