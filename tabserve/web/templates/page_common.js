// What both pages (/docs and the model's page) do alike, included into each page's script:
// a field's control from its JSON Schema in /openapi.json, the record read back from the
// controls, and the API key (`key_row.html`), kept in this tab only (sessionStorage, never in
// the address).

// the control of one field: a list of its levels (or true/false) when the schema names
// them, a number box otherwise; `id`: the element's id (the pages name them differently)
function fieldControl(name, schema, value, id) {
  const types = [].concat(schema.type || []);
  const nullable = types.includes("null") || (schema.anyOf || []).some(s => s.type === "null");
  let input;
  if (schema.enum || schema.anyOf) {
    input = document.createElement("select");
    const options = schema.enum ? schema.enum.filter(v => v !== null) : [true, false];
    if (nullable) options.push(null);
    for (const option of options) {
      const element = document.createElement("option");
      element.textContent = option === null ? "(missing)" : String(option);
      element.value = JSON.stringify(option);
      input.append(element);
    }
    const initial = schema.anyOf ? [1, true, "1", "Yes", "yes", "true"].includes(value) : value;
    input.value = JSON.stringify(initial === undefined ? options[0] : initial);
  } else {
    input = document.createElement("input");
    input.type = "number"; input.step = "any";
    input.value = value === null || value === undefined ? "" : value;
    if (nullable) input.placeholder = "empty: missing";
  }
  input.id = id; input.name = name;
  return input;
}

// the record the controls hold: a list's value as JSON, a number box's as a number or null
function recordFrom(names, idOf) {
  const out = {};
  for (const name of names) {
    const input = document.getElementById(idOf(name));
    if (input.tagName === "SELECT") out[name] = JSON.parse(input.value);
    else out[name] = input.value === "" ? null : Number(input.value);
  }
  return out;
}

// with API keys on, every call but the page's own load carries the key
function keyHeader() {
  const key = sessionStorage.getItem("tabserve-api-key");
  return key ? {"X-API-Key": key} : {};
}

// "Use this key" keeps the key and loads the page again with it
function onKeyGiven(load) {
  document.getElementById("use-key").addEventListener("click", () => {
    sessionStorage.setItem("tabserve-api-key", document.getElementById("api-key").value.trim());
    load();
  });
}

// after the page's first call: on a 401 the key row asks for a key (saying why in `about`)
// and the page waits for it (true); otherwise the row hides (false)
function keyNeeded(status, why) {
  const row = document.getElementById("key-row");
  row.hidden = status !== 401;
  if (row.hidden) return false;
  document.getElementById("about").textContent = why;
  document.getElementById("key-problem").textContent =
    sessionStorage.getItem("tabserve-api-key") ? "that key is not valid" : "";
  return true;
}
