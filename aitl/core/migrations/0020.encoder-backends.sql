-- Which inference backends wrote each embedding version's vectors (issue 33): torch,
-- torch-bf16, onnx or openvino (`rag.encoders`). Every backend's vectors agree with torch
-- float32 within cosine 0.999, so one index may hold several; `aitl kb stats` lists them.
-- Versions built before this migration were written by torch.
ALTER TABLE kb_embedding_versions ADD COLUMN backends text[] NOT NULL DEFAULT '{torch}';
ALTER TABLE kb_embedding_versions ALTER COLUMN backends SET DEFAULT '{}';
