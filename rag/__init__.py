"""Knowledge store on pgvector and the retrieve → rerank → generate draft pipeline."""
