from aitl.core import migrations


def test_fresh_database_is_migrated(db):
    assert migrations.pending(db.url) == []
    with db.connection() as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"kb_documents", "kb_chunks", "kb_chunk_embeddings", "procrastinate_jobs"} <= tables
