"""Built-in methods: every module here registers its entries on import."""
