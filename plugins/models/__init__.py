"""Built-in models plugins, one file each."""
