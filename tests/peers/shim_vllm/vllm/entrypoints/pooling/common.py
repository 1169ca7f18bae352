import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class OpenAIBaseModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class UsageInfo(OpenAIBaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: Any = None


def new_id(prefix):
    return Field(default_factory=lambda: f"{prefix}-{uuid.uuid4().hex}")


def now():
    return Field(default_factory=lambda: int(time.time()))
