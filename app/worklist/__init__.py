"""The worklist: a Qt table model over case records, its sort/filter proxy and its view."""
