"""Corpus discovery, media decoding, preprocessing into LitData shards and the LightningDataModules."""
