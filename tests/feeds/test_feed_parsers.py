"""catalog.feeds parsing: Google Merchant Center CSV, TSV and JSON lines; prices; bad rows with reasons."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from catalog.feeds import FeedError, FeedItem, feed_parse, parse_price

TSV = (
    "id\ttitle\tbrand\tprice\timage_link\tadditional_image_link\tlink\n"
    "A1\tNike Air Max 90\tNike\t89.99 USD\thttp://img/a1.jpg\thttp://img/a1b.jpg,http://img/a1c.jpg\thttps://shop.example/a1\n"
    "A2\tVans Old Skool\tVans\t65\thttp://img/a2.jpg\t\t\n"
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("89.99 USD", Decimal("89.99")),
        ("USD 89.99", Decimal("89.99")),
        ("89.99usd", Decimal("89.99")),
        ("$89.99", Decimal("89.99")),
        ("1,299.00 USD", Decimal("1299.00")),
        ("65", Decimal("65.00")),
        (120, Decimal("120.00")),
        (89.5, Decimal("89.50")),
        ({"value": "70.00", "currency": "USD"}, Decimal("70.00")),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_prices(raw, expected):
    assert parse_price(raw) == expected


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("89.99 EUR", "EUR"),
        ("GBP 10", "GBP"),
        ({"value": "10", "currency": "eur"}, "EUR"),
        ("cheap", "not a number"),
        ("-5 USD", "outside"),
        ("10000000 USD", "outside"),
        ("1e9", "not a number"),
        ("NaN", "not a number"),
        ("12,34", "not a number"),
        (True, "not a number"),
    ],
)
def test_bad_prices(raw, words):
    with pytest.raises(ValueError, match=words):
        parse_price(raw)


def test_tsv():
    parsed = feed_parse(TSV.encode(), filename="products.txt")
    assert (parsed.format, parsed.rows, parsed.failures) == ("tsv", 2, [])
    assert parsed.items[0] == FeedItem(
        line=2,
        id="A1",
        title="Nike Air Max 90",
        brand="Nike",
        brand_slug="nike",
        price_usd=Decimal("89.99"),
        image_urls=("http://img/a1.jpg", "http://img/a1b.jpg", "http://img/a1c.jpg"),
        link="https://shop.example/a1",
    )
    assert parsed.items[1].image_urls == ("http://img/a2.jpg",)
    assert parsed.items[1].link == ""
    assert parsed.ids == {"A1", "A2"}


def test_csv_with_quotes_bom_and_google_column_spellings():
    text = (
        "\ufeffID,Title,G:Brand,Price,Image Link,additional_image_link,link\r\n"
        '"B1","Adidas Samba, white",adidas,"100.00 USD",http://img/b1.jpg,"http://img/b2.jpg, http://img/b1.jpg",\r\n'
    )
    parsed = feed_parse(text.encode("utf-8"), filename="feed.csv")
    assert parsed.format == "csv"
    [item] = parsed.items
    assert (item.id, item.title, item.brand_slug) == ("B1", "Adidas Samba, white", "adidas")
    assert item.image_urls == ("http://img/b1.jpg", "http://img/b2.jpg")  # repeats dropped, order kept


def test_a_txt_file_with_commas_is_read_as_csv():
    parsed = feed_parse(TSV.replace("\t", ",").replace("a1b.jpg,http", "a1b.jpg;http").encode(), filename="f.txt")
    assert parsed.format == "csv"


def test_jsonl_by_extension_and_by_content():
    lines = [
        {"id": "J1", "title": "Puma Suede", "brand": "Puma", "price": {"value": "70", "currency": "USD"},
         "image_link": "http://img/j1.jpg", "additional_image_link": ["http://img/j2.jpg"], "link": "https://shop.example/j1"},
        {"id": 2, "title": "Asics Gel", "brand": "ASICS", "price": 99, "image_link": "http://img/j3.jpg"},
    ]  # fmt: skip
    data = "\n".join(json.dumps(line) for line in lines).encode()
    for filename in ("feed.jsonl", "feed.bin"):
        parsed = feed_parse(data, filename=filename)
        assert parsed.format == "jsonl"
        assert [item.id for item in parsed.items] == ["J1", "2"]
        assert parsed.items[0].image_urls == ("http://img/j1.jpg", "http://img/j2.jpg")
        assert parsed.items[1].price_usd == Decimal("99.00")


def test_latin1_and_utf16_files():
    text = "id\ttitle\tbrand\tprice\timage_link\nC1\tCrème Runner\tLe Coq Sportif\t50\thttp://img/c.jpg\n"
    assert feed_parse(text.encode("latin-1")).items[0].title == "Crème Runner"
    utf16 = feed_parse(text.encode("utf-16"))
    assert (utf16.items[0].title, utf16.items[0].brand_slug) == ("Crème Runner", "le-coq-sportif")


def test_bad_rows_are_refused_with_reasons_and_the_rest_is_read():
    text = (
        "id\ttitle\tbrand\tprice\timage_link\tlink\n"
        "\ttitle without id\tNike\t10\thttp://i/0.jpg\t\n"  # line 2
        "R1\t\tNike\t10\thttp://i/1.jpg\t\n"  # 3
        "R2\tNo brand\t\t10\thttp://i/2.jpg\t\n"  # 4
        "R3\tBad price\tNike\tten dollars\thttp://i/3.jpg\t\n"  # 5
        "R4\tEuro\tNike\t10 EUR\thttp://i/4.jpg\t\n"  # 6
        "R5\tNo photo\tNike\t10\t\t\n"  # 7
        "R6\tBad link\tNike\t10\thttp://i/6.jpg\tjavascript:alert(1)\n"  # 8
        "R7\tGood\tNike\t10\thttp://i/7.jpg\thttps://shop.example/r7\n"  # 9
        "R7\tRepeated id\tNike\t10\thttp://i/8.jpg\t\n"  # 10
        "\n"
        "R8\tPunctuation brand\t---\t10\thttp://i/9.jpg\t\n"  # 12
    )
    parsed = feed_parse(text.encode())
    assert [item.id for item in parsed.items] == ["R7"]
    assert parsed.rows == 10  # the blank line is not a row
    reasons = {(failure.line, failure.id): failure.reason for failure in parsed.failures}
    assert reasons == {
        (2, ""): "id is empty",
        (3, "R1"): "title is empty",
        (4, "R2"): "brand is empty",
        (5, "R3"): "price 'ten dollars' is not a number with an optional currency code",
        (6, "R4"): "price '10 EUR' is in EUR; the catalog keeps USD prices only",
        (7, "R5"): "image_link is empty",
        (8, "R6"): "link 'javascript:alert(1)' is not an http(s) URL of at most 1000 characters",
        (10, "R7"): "id 'R7' already appeared on line 9",
        (12, "R8"): "brand '---' has no letters or digits",
    }
    # Every id the file names counts as present (a product whose row is bad this time stays listed).
    assert parsed.ids == {"R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8"}


def test_bad_json_lines_are_refused():
    data = b'{"id": "J1", "title": "T", "brand": "B", "image_link": "http://i/1.jpg"}\n{not json\n[1, 2]\n'
    parsed = feed_parse(data, filename="f.jsonl")
    assert [item.id for item in parsed.items] == ["J1"]
    assert [(failure.line, failure.reason.split(" (")[0]) for failure in parsed.failures] == [
        (2, "the line is not valid JSON"),
        (3, "the line is not a JSON object"),
    ]


def test_additional_images_are_capped_at_ten():
    extra = ",".join(f"http://i/{n}.jpg" for n in range(15))
    text = f"id\ttitle\tbrand\timage_link\tadditional_image_link\nX\tT\tB\thttp://i/main.jpg\t{extra}\n"
    assert len(feed_parse(text.encode()).items[0].image_urls) == 11


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"", "feed_empty", "empty"),
        (b"\n\n  \n", "feed_empty", "empty"),
        (b"id\ttitle\tbrand\timage_link\n", "feed_empty", "no product rows"),
        (b"id,title,price\nA,B,1\n", "feed_columns", "brand, image_link"),
        (b"<html><body>Not a feed</body></html>", "feed_columns", "id, title, brand, image_link"),
    ],
)
def test_unreadable_files(data, code, words):
    with pytest.raises(FeedError) as caught:
        feed_parse(data)
    assert caught.value.code == code
    assert words in caught.value.message
