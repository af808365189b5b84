"""The shop's web app (FastAPI): an order and its receipt job commit together, or neither does.

SHOP_DATABASE_URL=postgresql://... uvicorn shop.web:app
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException

import jobfleet

app = FastAPI()


@app.post("/orders")
async def create_order(item: str, declined: bool = False) -> dict[str, Any]:
    url = os.environ["SHOP_DATABASE_URL"]
    conn = await psycopg.AsyncConnection.connect(url)
    async with conn, conn.transaction():  # the request's transaction
        cur = await conn.execute("INSERT INTO orders (item) VALUES (%s) RETURNING id", (item,))
        row = await cur.fetchone()
        assert row is not None
        job = await jobfleet.aio.enqueue(conn, "send_receipt", {"order": row[0]})
        if declined:  # raised inside the transaction: the order and its job vanish
            raise HTTPException(402, "payment declined")
    return {"order": row[0], "job": job}


@app.get("/orders/{order_id}/receipt")
async def receipt(order_id: int, job: int) -> Any:
    return await jobfleet.aio.wait(job, timeout=30)
