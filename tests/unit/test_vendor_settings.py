"""The vendors' settings reach the real clients, and an embedding batch is always one OpenAI request."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ingest.config import OPENAI_MAX_TOKENS_PER_REQUEST, Settings
from router import openai_real
from router.backoff import RetryPolicy
from router.llamaparse.client import LlamaParseParser
from router.openai_real import OpenAIEmbedder, plan_batches


def test_retry_policy_comes_from_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        vendor_max_attempts=3,
        vendor_max_retry_s=40,
        vendor_initial_backoff_s=0.5,
        vendor_max_backoff_s=4,
        vendor_timeout_s=7,
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        max_attempts=3, max_elapsed_s=40, initial_backoff_s=0.5, max_backoff_s=4, timeout_s=7
    )
    # However long retries may last, they end inside half of a stage's hard limit.
    short_stage = settings.model_copy(update={"job_time_limit_s": 60})
    assert RetryPolicy.from_settings(short_stage).max_elapsed_s == 30


def test_openai_limits_come_from_the_settings() -> None:
    settings = Settings(
        _env_file=None, openai_api_key="sk-test", openai_requests_per_minute=50, openai_tokens_per_minute=9000
    )
    limits = OpenAIEmbedder(settings)._limits
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (50, 9000)
    defaults = OpenAIEmbedder(Settings(_env_file=None, openai_api_key="sk-test"))._limits
    assert (defaults.requests_per_minute, defaults.tokens_per_minute) == (3000, 1_000_000)


def test_llamaparse_waits_come_from_the_settings() -> None:
    base = Settings(_env_file=None, llama_cloud_api_key="llx-test", job_time_limit_s=600)
    parser = LlamaParseParser(
        base.model_copy(
            update={
                "llamaparse_job_deadline_s": 45.0,
                "llamaparse_poll_interval_s": 0.5,
                "llamaparse_max_poll_interval_s": 4.0,
            }
        )
    )
    assert (parser.job_deadline_s, parser._first_interval, parser._max_interval) == (45.0, 0.5, 4.0)
    # Unset, or longer than the stage allows: a third of the stage's hard limit (two waits, a resubmission).
    assert LlamaParseParser(base).job_deadline_s == 200
    assert (
        LlamaParseParser(base.model_copy(update={"llamaparse_job_deadline_s": 900.0})).job_deadline_s == 200
    )


def test_the_limits_repeated_in_settings_are_the_clients() -> None:
    assert OPENAI_MAX_TOKENS_PER_REQUEST == openai_real.MAX_TOKENS_PER_REQUEST
    assert Settings.model_fields["embed_batch_chunks"].metadata[-1].le == openai_real.MAX_INPUTS_PER_REQUEST


@pytest.mark.parametrize("chunk_tokens", [32, 512, 1171, 1172, 4000, 8000])
def test_the_default_embed_batch_is_one_request_whatever_the_chunk_size(chunk_tokens: int) -> None:
    settings = Settings(_env_file=None, chunk_tokens=chunk_tokens)
    # The worst batch: every chunk as long as chunking allows.
    assert len(plan_batches([chunk_tokens] * settings.embed_batch_chunks)) == 1
    assert settings.embed_batch_chunks == min(256, OPENAI_MAX_TOKENS_PER_REQUEST // chunk_tokens)


def test_an_explicit_embed_batch_larger_than_one_request_is_refused() -> None:
    assert Settings(_env_file=None, chunk_tokens=2000, embed_batch_chunks=150).embed_batch_chunks == 150
    with pytest.raises(ValidationError, match="use at most 150"):
        Settings(_env_file=None, chunk_tokens=2000, embed_batch_chunks=151)
