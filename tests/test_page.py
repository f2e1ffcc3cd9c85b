"""The model's page at GET / (a browser's), and POST /score, the file door it uses: the card's
figures the bundle carries, the JSON index kept for clients, and the page in real Chromium
against the real gunicorn (its screenshots kept in `helpers.SCREENSHOTS`)."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import requests

from helpers import (ROOT, chromium, enter_api_key, records_from_csv, screenshot,
                     served_in_chromium, start_gunicorn, stop)
from tabserve.model.bundle import ModelBundle
from tabserve.tables import load_csv
from tabserve.training.reports import write_reports
from tabserve.training.trainer import train

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def telco_rows(count: int) -> pd.DataFrame:
    return load_csv(ROOT / "data" / "telco_churn.csv").head(count)


def telco_schema():
    return ModelBundle.load(ROOT / "model.bin").schema


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


# --- the card's figures in the bundle ---------------------------------------------------------

def test_the_committed_model_carries_its_cards_figures(telco_bundle):
    card = telco_bundle.card
    assert card["rows"] == "test split" and card["count"] == telco_bundle.metrics["rows"]["test"]
    low, high = card["intervals_95"]["roc_auc"]
    assert low < telco_bundle.metrics["test"]["roc_auc"] < high
    fields = card["importance"]["fields"]
    assert {f["field"] for f in fields} == set(telco_bundle.schema.names)
    assert [f["value"] for f in fields] == sorted((f["value"] for f in fields), reverse=True)
    assert all(f["direction"] for f in fields)  # a binary model: each field's direction
    counts = card["confusion"]["counts"]
    assert sum(map(sum, counts)) == card["count"] and card["confusion"]["threshold"] == 0.5
    (curve,) = card["calibration"]
    assert len(curve["predicted"]) == len(curve["observed"]) >= 5
    assert [g["field"] for g in card["groups"]] == ["gender", "seniorcitizen"]
    gender = card["groups"][0]
    assert sum(row[1] for row in gender["rows"]) == card["count"]


def test_the_card_survives_the_file_and_reaches_get_model(tmp_path, telco_bundle, client):
    path = tmp_path / "model.bin"
    telco_bundle.save(path)
    assert ModelBundle.load(path).card == telco_bundle.card
    assert client.get("/model").get_json()["card"] == telco_bundle.card


def test_a_multiclass_card_has_a_curve_per_class_and_a_square_confusion(flower_csv, tmp_path):
    result = train(load_csv(flower_csv), "species", seed=1, folds=3, max_trials=3)
    bundle = result.bundle.stamp(data_path=flower_csv, data_sha256="0" * 64, seed=1)
    write_reports(bundle, result, tmp_path)
    card = bundle.card
    assert [c["class"] for c in card["calibration"]] == bundle.classes
    assert len(card["confusion"]["counts"]) == len(bundle.classes)
    assert card["confusion"]["threshold"] is None and card["groups"] == []
    assert card["count"] == len(result.test_y)


def test_a_bundle_written_before_cards_loads_without_one(tmp_path, telco_bundle):
    older = ModelBundle(**{**vars(telco_bundle), "card": None})
    older.save(tmp_path / "old.bin")
    assert ModelBundle.load(tmp_path / "old.bin").card is None


# --- GET /: the page for a browser, the index for clients ---------------------------------------

def test_a_browser_gets_the_page_and_a_client_the_json_index(client):
    page = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Vary"] == "Accept"
    html = page.get_data(as_text=True)
    # nothing fetched from elsewhere: no CDN, no font (the SVG namespace is a name, not a fetch)
    assert "<script>" in html and "src=" not in html and "https://" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    for accept in (None, "*/*", "application/json"):
        index = client.get("/", headers={"Accept": accept} if accept else {})
        assert index.mimetype == "application/json" and index.headers["Vary"] == "Accept"
        assert "POST /score" in index.get_json()["endpoints"]


def test_the_openapi_document_describes_the_file_door(client):
    spec = client.get("/openapi.json").get_json()
    score = spec["paths"]["/score"]["post"]
    assert "text/csv" in score["requestBody"]["content"]
    assert "score.py" in score["summary"]
    assert "text/html" in spec["paths"]["/"]["get"]["responses"]["200"]["content"]


# --- POST /score ----------------------------------------------------------------------------------

def test_a_file_is_scored_as_score_py_scores_it(client, telco_bundle):
    rows = telco_rows(20).astype(object)
    rows.loc[3, "tenure"] = "lots"          # a reject, named by its line (header: line 1)
    rows.loc[7, "contract"] = "weekly"      # scored, with a warning
    answer = client.post("/score", data=csv_bytes(rows), content_type="text/csv")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["rows"], body["scored"], body["rejected"]) == (20, 19, 1)
    scored = pd.read_csv(io.StringIO(body["scored_csv"]), keep_default_na=False)
    rejects = pd.read_csv(io.StringIO(body["rejects_csv"]))
    assert list(rejects["line"]) == [5] and "tenure" in rejects["problems"][0]
    assert "churn_input" in scored.columns and "churn_probability" in scored.columns
    # the same answers as POST /predict gives the same records
    records = records_from_csv(telco_rows(20).drop(index=3), telco_bundle.schema)
    records[6]["contract"] = "weekly"
    predicted = client.post("/predict", json=records).get_json()
    assert scored["churn_probability"].tolist() == pytest.approx(
        [p["churn_probability"] for p in predicted], abs=1e-12)
    assert "unseen category 'weekly'" in scored["warnings"][6]
    assert (scored["model_version"] == telco_bundle.version).all()


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"tenure,contract\n1,two_year\n", "text/csv", 422, "lacks: 'gender'"),
    (b"\xff\xfe\x00bad", "text/csv", 400, "not UTF-8"),
    (b"", "text/csv", 400, "no header row"),
    (b"{}", "application/json", 415, "text/csv"),
    # found by schemathesis: a line break alone (\r) inside the first line
    (b"\x04r?\r\x08\xc3\xb3rJE\x1f", "text/csv", 422, "lacks: 'gender'"),
])
def test_a_file_the_door_cannot_score_is_a_clear_4xx(client, body, content_type, status, words):
    answer = client.post("/score", data=body, content_type=content_type)
    assert answer.status_code == status
    assert words in answer.get_json()["detail"]


def test_past_the_limits_the_answer_names_score_py(client):
    rows = csv_bytes(telco_rows(60))  # the client's MAX_BATCH_RECORDS is 50
    answer = client.post("/score", data=rows, content_type="text/csv")
    assert answer.status_code == 413 and "score.py" in answer.get_json()["detail"]
    big = csv_bytes(telco_rows(7000))  # past its MAX_BODY_BYTES of 200,000
    answer = client.post("/score", data=big, content_type="text/csv")
    assert answer.status_code == 413 and "score.py" in answer.get_json()["detail"]


# --- in a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page_server():
    """The committed model on the real gunicorn, drift judged from 40 records."""
    process, url = start_gunicorn(ROOT / "model.bin", DRIFT_MIN_RECORDS="40",
                                  WEB_CONCURRENCY="2")
    yield url
    assert stop(process) == 0


def loaded(browser, url: str):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda b: b.execute_script("return document.body.dataset.loaded === 'true'"))


@pytest.mark.browser
def test_the_page_shows_the_model_answers_scores_a_file_and_watches_drift(page_server,
                                                                           tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def text(element_id: str) -> str:
        return browser.find_element(By.ID, element_id).text

    browser = chromium(tmp_path, 1200, 900)
    try:
        loaded(browser, page_server + "/")
        # the model: what it predicts, its metrics with their intervals, the card's figures
        assert text("heading") == "Predicting churn"
        assert "aa60989966d1" in text("about") and "data/telco_churn.csv" in text("about")
        assert "ROC AUC" in text("metrics") and "0.8229 to 0.8674" in text("metrics")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#importance .bar")) == 15
        assert "rank correlation" in text("importance")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#calibration circle")) >= 5
        assert len(browser.find_elements(By.CSS_SELECTOR, "#confusion td")) == 4
        assert "seniorcitizen" in text("groups")
        assert "Too few records yet: 0 served" in text("drift")

        # try it: the answer as bars, each field's push sorted, a warning beside its field
        tenure = browser.find_element(By.ID, "field-tenure")
        tenure.clear()
        tenure.send_keys("-3" + Keys.ENTER)  # by keyboard: Enter in a field asks the model
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "contributions"))
        assert text("answer-label") in ("yes", "no")
        widths = browser.execute_script(
            "return [...document.querySelectorAll('#probabilities .bar')]"
            ".map(b => parseFloat(b.style.width))")
        assert len(widths) == 2 and sum(widths) == pytest.approx(100, abs=0.01)
        pushes = [float(n.text) for n in
                  browser.find_elements(By.CSS_SELECTOR, "#contributions > .n")]
        assert len(pushes) == 19 and [abs(p) for p in pushes] == sorted(map(abs, pushes),
                                                                         reverse=True)
        assert "outside the range seen in training" in text("warning-tenure")
        assert text("warning-contract") == ""

        # a file: scored, with its reject named
        rows = telco_rows(30).astype(object)
        rows.loc[4, "monthlycharges"] = "cheap"
        path = tmp_path / "customers.csv"
        path.write_bytes(csv_bytes(rows))
        browser.find_element(By.ID, "file").send_keys(str(path))
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "file-summary"))
        assert text("file-summary").startswith("30 rows: 29 scored, 1 rejected")
        assert "monthlycharges" in text("file-rejects")
        links = [a.get_attribute("download") for a in
                 browser.find_elements(By.CSS_SELECTOR, "#file-summary a")]
        assert links == ["customers.scored.csv", "customers.rejects.csv"]

        # drift: after traffic the page shows it on its own, fields ranked by PSI
        records = records_from_csv(telco_rows(60), telco_schema())
        for record in records:
            record["tenure"] *= 30  # in days: a shift the page must show
        sent = requests.post(page_server + "/predict", json=records, timeout=30)
        assert sent.status_code == 200
        WebDriverWait(browser, 40).until(lambda b: b.find_elements(By.ID, "drift-table")
                                         and b.find_elements(By.ID, "drift-summary"))
        first = browser.find_element(By.CSS_SELECTOR, "#drift-table tbody tr")
        assert first.find_element(By.CSS_SELECTOR, "td").text == "tenure"
        assert "major" in first.text
        first.find_element(By.TAG_NAME, "summary").click()
        assert len(first.find_elements(By.CSS_SELECTOR, ".bar")) > 4
        shot = screenshot(browser, "page")
        assert shot.stat().st_size > 50_000

        # on a phone: one column, nothing wider than the screen
        browser.set_window_size(390, 844)
        loaded(browser, page_server + "/")
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        screenshot(browser, "page-phone")
    finally:
        browser.quit()


@pytest.mark.browser
def test_the_page_asks_for_the_api_key_and_keeps_it_in_the_tab(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    key = "page-key-" + "e" * 24
    with served_in_chromium(tmp_path, API_KEYS=key, WEB_CONCURRENCY="1") as (browser, url):
        assert requests.get(url + "/", timeout=10).status_code == 401  # the JSON index
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "key-row").is_displayed())
        assert "churn" not in browser.find_element(By.TAG_NAME, "body").text
        enter_api_key(browser, key)
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return document.body.dataset.loaded === 'true'"))
        assert not browser.find_element(By.ID, "key-row").is_displayed()
        assert browser.find_element(By.ID, "heading").text == "Predicting churn"
        assert key not in browser.current_url
        assert browser.execute_script("return sessionStorage.getItem('tabserve-api-key')") == key
        assert browser.execute_script("return localStorage.length") == 0


@pytest.mark.browser
def test_what_the_training_csv_names_stays_text_on_the_page(tmp_path):
    """Field names and levels come from whoever made the CSV: the page shows them, never runs
    them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    hostile = '<img src=x onerror="document.title=\'ran\'">'
    rows = 200
    frame = pd.DataFrame({
        "size": [i % 17 for i in range(rows)],
        "colour": [hostile if i % 3 == 0 else "<b>red</b>" for i in range(rows)],
        "<i>gender</i>": ["a" if i % 2 else "b" for i in range(rows)],
        "outcome": ["yes" if (i % 17) > 8 or i % 3 == 0 else "no" for i in range(rows)]})
    csv = tmp_path / "hostile.csv"
    frame.to_csv(csv, index=False)
    result = train(load_csv(csv), "outcome", seed=1, folds=3, max_trials=3)
    bundle = result.bundle.stamp(data_path=csv, data_sha256="0" * 64, seed=1)
    write_reports(bundle, result, tmp_path / "reports")
    bundle.save(tmp_path / "hostile.bin")
    with served_in_chromium(tmp_path, tmp_path / "hostile.bin",
                            WEB_CONCURRENCY="1") as (browser, url):
        loaded(browser, url + "/")
        browser.find_element(By.ID, "ask").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "answer-label"))
        assert browser.title == "tabserve: outcome"
        assert not browser.find_elements(By.CSS_SELECTOR, "main img, main b, main i")
        options = [o.text for o in browser.find_elements(By.CSS_SELECTOR,
                                                         "#field-colour option")]
        assert hostile in options
        assert "<i>gender</i>" in browser.find_element(By.ID, "groups").text
