"""Turning user inputs (images, texts) into batches for a backbone."""
