from typing import Any

from pydantic import BaseModel

from ..common import OpenAIBaseModel, UsageInfo, new_id, now


class RerankDocument(BaseModel):
    text: str | None = None
    multi_modal: Any = None


class RerankResult(BaseModel):
    index: int
    document: RerankDocument
    relevance_score: float


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(OpenAIBaseModel):
    id: str
    model: str
    usage: RerankUsage
    results: list[RerankResult]


class ScoreResponseData(OpenAIBaseModel):
    index: int
    object: str = "score"
    score: float


class ScoreResponse(OpenAIBaseModel):
    id: str = new_id("embd")
    object: str = "list"
    created: int = now()
    model: str
    data: list[ScoreResponseData]
    usage: UsageInfo
