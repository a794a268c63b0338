"""Side-panel widgets: each binds to a state object (both ways) or shows the current case."""
