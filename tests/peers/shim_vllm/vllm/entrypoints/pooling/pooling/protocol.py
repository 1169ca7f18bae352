from typing import Any

from ..common import OpenAIBaseModel, UsageInfo, new_id, now


class PoolingResponseData(OpenAIBaseModel):
    index: int
    object: str = "pooling"
    data: Any


class PoolingResponse(OpenAIBaseModel):
    id: str = new_id("pool")
    object: str = "list"
    created: int = now()
    model: str
    data: list[PoolingResponseData]
    usage: UsageInfo
