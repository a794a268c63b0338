"""The radiograph viewer: pure numpy display steps, the heatmap overlay, the pyqtgraph widget."""
