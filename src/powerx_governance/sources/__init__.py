"""Where inventories and catalogs come from: one interface, one file per implementation."""
