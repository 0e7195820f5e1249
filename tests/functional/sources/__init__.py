"""HTTP sources against real local HTTP servers."""
