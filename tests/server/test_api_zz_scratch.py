import asyncio
import json
from prometheus_client.parser import text_string_to_metric_families
from served import Served, serve, server_settings
from strongroom import Strongroom


async def test_explore(served: Served, tmp_path) -> None:
    async with served.admin() as c:
        r = await c.post("/v1/secrets", json={"name": "app-one", "value": "v1"})

        async def gen():
            for _ in range(300):
                yield b"x" * 1000
        r = await c.post("/v1/secrets", content=gen(), headers={"content-type": "application/json"})
        print("chunked", r.status_code, r.text, dict(r.headers))
        async def gen2():
            yield b'{"name": "app-two", "value": "'
            for _ in range(300):
                yield b"x" * 1000
            yield b'"}'
        r = await c.post("/v1/secrets", content=gen2(), headers={"content-type": "application/json"})
        print("chunked2", r.status_code, r.text, dict(r.headers))
        r = await c.get("/metrics")
        for fam in text_string_to_metric_families(r.text):
            print(fam.name, fam.type, [(s.name, s.labels, s.value) for s in fam.samples][:4])
