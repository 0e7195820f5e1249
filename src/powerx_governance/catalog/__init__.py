"""The plugin catalog: releases, advisories and the host compatibility matrix."""
