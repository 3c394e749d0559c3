// The curator's rule builder: edits a policy's eligibility rule tree as nested groups of conditions,
// keeps the JSON textarea (the value the form submits) in step both ways, and asks the server how
// many firms the current rules admit (POST /staff/rules/preview) a moment after each change.
// Without JavaScript the textarea alone is the editor and a button previews by posting the form.
(function () {
  "use strict";

  var root = document.getElementById("rule-builder");
  if (!root) { return; }
  var schema = JSON.parse(document.getElementById(root.dataset.schema).textContent);
  var textarea = document.getElementById(root.dataset.json);
  var previewBox = document.getElementById(root.dataset.preview);
  var previewUrl = root.dataset.url;
  var advanced = document.getElementById("rules-advanced");

  var FIELDS = {};
  schema.fields.forEach(function (f) { FIELDS[f.name] = f; });
  var GROUP_TYPES = [["all", "满足以下全部条件"], ["any", "满足以下任一条件"], ["none", "以下条件都不满足"]];
  var uid = 0;
  var model = null;

  // ------------------------------------------------------------ model ⇄ JSON

  function copyExtra(node, skip) {
    var extra = {};
    Object.keys(node).forEach(function (k) { if (skip.indexOf(k) < 0) { extra[k] = node[k]; } });
    return extra;
  }

  function isCondition(node) {
    return node && ("field" in node || "op" in node || "value" in node);
  }

  // Returns the editable model of a rule node, or throws when the builder cannot show it.
  function toModel(node) {
    if (node === null || node === undefined) { return { kind: "group", type: "all", children: [], extra: {} }; }
    if (typeof node !== "object" || Array.isArray(node)) { throw new Error("节点应为对象"); }
    if (isCondition(node)) {
      return { kind: "cond", field: node.field, op: node.op, value: node.value, extra: copyExtra(node, ["field", "op", "value"]) };
    }
    if (Array.isArray(node.all) || Array.isArray(node.any)) {
      var type = Array.isArray(node.all) ? "all" : "any";
      return { kind: "group", type: type, children: node[type].map(toModel), extra: copyExtra(node, [type]) };
    }
    if (node.not && typeof node.not === "object") {
      var inner = node.not;
      if (Array.isArray(inner.any) && Object.keys(inner).length === 1) {
        return { kind: "group", type: "none", children: inner.any.map(toModel), extra: copyExtra(node, ["not"]) };
      }
      if (isCondition(inner)) {
        return { kind: "group", type: "none", children: [toModel(inner)], extra: copyExtra(node, ["not"]) };
      }
    }
    throw new Error("条件构建器无法显示这种组合，请在 JSON 中编辑");
  }

  function toJSON(m, isRoot) {
    if (m.kind === "cond") {
      var c = { field: m.field, op: m.op, value: m.value === undefined ? null : m.value };
      return Object.assign(c, m.extra);
    }
    var kids = m.children.map(function (child) { return toJSON(child, false); });
    if (isRoot && kids.length === 0) { return null; }
    var out;
    if (m.type === "none") {
      out = { not: kids.length === 1 && m.children[0].kind === "cond" ? kids[0] : { any: kids } };
    } else {
      out = {};
      out[m.type] = kids;
    }
    return Object.assign(out, m.extra);
  }

  // ------------------------------------------------------------ values

  function opsFor(field) {
    var f = FIELDS[field];
    if (!f) { return []; }
    return Object.keys(schema.ops).filter(function (name) { return schema.ops[name].types.indexOf(f.type) >= 0; });
  }

  function defaultValue(field, op) {
    var f = FIELDS[field];
    var shape = schema.ops[op] ? schema.ops[op].value : "scalar";
    if (shape === "numberRange" || shape === "dateRange") { return [null, null]; }
    if (["stringList", "industryPrefixes", "regionCodes", "tagList"].indexOf(shape) >= 0) { return []; }
    if (f && f.type === "enum" && f.choices.length && shape === "scalar") { return f.choices[0][0]; }
    return null;
  }

  function splitList(text) {
    return text.split(/[\s,，、;；]+/).map(function (s) { return s.trim(); }).filter(Boolean);
  }

  function numberOrNull(text) {
    if (text === "" || text === null) { return null; }
    var n = Number(text);
    return isNaN(n) ? text : n;
  }

  // ------------------------------------------------------------ rendering

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "className") { node.className = attrs[k]; }
      else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }

  function labelled(labelText, control, extraClass) {
    var id = "rb-" + (++uid);
    control.id = id;
    return el("div", { className: "rb-control " + (extraClass || "") }, [el("label", { "for": id, text: labelText }), control]);
  }

  function option(value, text, selected) {
    var o = el("option", { value: value, text: text });
    if (selected) { o.selected = true; }
    return o;
  }

  function valueEditor(cond, number) {
    var f = FIELDS[cond.field];
    var spec = schema.ops[cond.op];
    var shape = spec ? spec.value : "scalar";
    var type = f ? f.type : "code";
    var unit = f && f.unit ? "（" + f.unit + "）" : "";
    var wrap = el("div", { className: "rb-value" });
    var prefix = "条件" + number + " ";

    function input(kind, value, onChange, label, attrs) {
      var inp = el("input", Object.assign({ type: kind }, attrs || {}));
      if (value !== null && value !== undefined) { inp.value = Array.isArray(value) ? value.join("、") : value; }
      inp.addEventListener("input", function () { onChange(inp.value); changed(false); });
      wrap.appendChild(labelled(label, inp));
      return inp;
    }

    if (shape === "numberRange" || shape === "dateRange") {
      var kind = shape === "dateRange" ? "date" : "number";
      var pair = Array.isArray(cond.value) ? cond.value.slice(0, 2) : [null, null];
      cond.value = pair;
      input(kind, pair[0], function (v) { cond.value[0] = kind === "number" ? numberOrNull(v) : (v || null); }, prefix + "下限" + unit, { step: "any" });
      input(kind, pair[1], function (v) { cond.value[1] = kind === "number" ? numberOrNull(v) : (v || null); }, prefix + "上限" + unit, { step: "any" });
      return wrap;
    }
    if (shape === "comparable" || shape === "years" || (shape === "scalar" && type === "number")) {
      var isDate = shape === "comparable" && type === "date";
      input(isDate ? "date" : "number", cond.value, function (v) { cond.value = isDate ? (v || null) : numberOrNull(v); },
        prefix + (shape === "years" ? "年数" : "取值" + unit), { step: "any", inputmode: "decimal" });
      return wrap;
    }
    if (type === "enum" && (shape === "scalar" || shape === "stringList")) {
      if (shape === "scalar") {
        var sel = el("select");
        f.choices.forEach(function (c) { sel.appendChild(option(c[0], c[1], c[0] === cond.value)); });
        sel.addEventListener("change", function () { cond.value = sel.value; changed(false); });
        wrap.appendChild(labelled(prefix + "取值", sel));
        return wrap;
      }
      var picked = Array.isArray(cond.value) ? cond.value : [];
      cond.value = picked;
      var box = el("fieldset", { className: "rb-checks" }, [el("legend", { text: prefix + "取值（可多选）" })]);
      f.choices.forEach(function (c) {
        var cb = el("input", { type: "checkbox", value: c[0] });
        cb.checked = picked.indexOf(c[0]) >= 0;
        cb.addEventListener("change", function () {
          cond.value = Array.prototype.filter.call(box.querySelectorAll("input:checked"), function () { return true; })
            .map(function (x) { return x.value; });
          changed(false);
        });
        box.appendChild(el("label", { className: "check" }, [cb, document.createTextNode(" " + c[1])]));
      });
      wrap.appendChild(box);
      return wrap;
    }
    if (shape === "tagList" && cond.field === "qualifications" && schema.qualifications.length) {
      var held = Array.isArray(cond.value) ? cond.value : [];
      cond.value = held;
      var quals = el("fieldset", { className: "rb-checks" }, [el("legend", { text: prefix + "资质（可多选）" })]);
      var names = schema.qualifications.slice();
      held.forEach(function (name) { if (names.indexOf(name) < 0) { names.push(name); } });
      names.forEach(function (name) {
        var cb = el("input", { type: "checkbox", value: name });
        cb.checked = held.indexOf(name) >= 0;
        cb.addEventListener("change", function () {
          cond.value = Array.prototype.map.call(quals.querySelectorAll("input:checked"), function (x) { return x.value; });
          changed(false);
        });
        quals.appendChild(el("label", { className: "check" }, [cb, document.createTextNode(" " + name)]));
      });
      wrap.appendChild(quals);
      return wrap;
    }
    if (shape === "regionCodes" || (type === "region" && (shape === "scalar" || shape === "stringList"))) {
      var list = shape !== "scalar";
      var text = input("text", cond.value, function (v) {
        cond.value = list ? splitList(v) : (v.trim() || null);
      }, prefix + (list ? "地区代码（可多个）" : "地区代码"), { inputmode: "numeric", placeholder: "如 442000" });
      var add = el("select", { className: "rb-add-region" });
      add.appendChild(option("", list ? "＋ 添加地区" : "选择地区", true));
      schema.regions.forEach(function (r) { add.appendChild(option(r.code, r.name + "（" + r.code + "）", false)); });
      add.addEventListener("change", function () {
        if (!add.value) { return; }
        if (list) {
          var codes = Array.isArray(cond.value) ? cond.value.slice() : [];
          if (codes.indexOf(add.value) < 0) { codes.push(add.value); }
          cond.value = codes;
        } else {
          cond.value = add.value;
        }
        text.value = list ? cond.value.join("、") : cond.value;
        add.value = "";
        changed(false);
      });
      wrap.appendChild(labelled(prefix + "选择地区", add, "rb-picker"));
      return wrap;
    }
    var listShapes = ["stringList", "industryPrefixes", "tagList"];
    if (listShapes.indexOf(shape) >= 0) {
      var hint = shape === "industryPrefixes" ? "行业代码前缀，如 C、C39、I65" : (shape === "tagList" ? "标签名称，多个用顿号分隔" : "多个值用顿号分隔");
      input("text", cond.value, function (v) {
        cond.value = splitList(shape === "industryPrefixes" ? v.toUpperCase() : v);
      }, prefix + "取值（" + hint + "）", shape === "tagList" ? { list: "rb-tag-names" } : {});
      return wrap;
    }
    input("text", cond.value, function (v) { cond.value = v.trim() || null; }, prefix + "取值");
    return wrap;
  }

  var counter = 0;

  function renderCondition(cond, parent, index) {
    var number = ++counter;
    var row = el("li", { className: "rb-cond" });
    var fieldSel = el("select");
    var groups = {};
    schema.fields.forEach(function (f) {
      var g = f.derived ? "派生字段" : "企业画像字段";
      if (!groups[g]) { groups[g] = el("optgroup", { label: g }); }
      groups[g].appendChild(option(f.name, f.label + (f.unit ? "（" + f.unit + "）" : ""), f.name === cond.field));
    });
    Object.keys(groups).forEach(function (g) { fieldSel.appendChild(groups[g]); });
    if (!FIELDS[cond.field]) {
      fieldSel.insertBefore(option(cond.field || "", "（未知字段 " + (cond.field || "") + "）", true), fieldSel.firstChild);
    }
    fieldSel.addEventListener("change", function () {
      cond.field = fieldSel.value;
      cond.op = opsFor(cond.field)[0];
      cond.value = defaultValue(cond.field, cond.op);
      changed(true);
    });

    var opSel = el("select");
    var allowed = opsFor(cond.field);
    if (allowed.indexOf(cond.op) < 0 && cond.op) { opSel.appendChild(option(cond.op, "（不适用的运算 " + cond.op + "）", true)); }
    var fieldType = FIELDS[cond.field] ? FIELDS[cond.field].type : null;
    allowed.forEach(function (name) {
      // "大于等于／不早于": numbers read the first wording, dates the second.
      var parts = schema.ops[name].title.split("／");
      var title = parts.length === 2 ? parts[fieldType === "date" ? 1 : 0] : parts[0];
      opSel.appendChild(option(name, title, name === cond.op));
    });
    opSel.addEventListener("change", function () {
      var before = schema.ops[cond.op] ? schema.ops[cond.op].value : null;
      cond.op = opSel.value;
      if (schema.ops[cond.op].value !== before) { cond.value = defaultValue(cond.field, cond.op); }
      changed(true);
    });

    var remove = el("button", { type: "button", className: "outline secondary small rb-remove", text: "删除", "aria-label": "删除条件" + number });
    remove.addEventListener("click", function () {
      parent.children.splice(index, 1);
      changed(true);
    });

    row.appendChild(el("span", { className: "rb-num", "aria-hidden": "true", text: String(number) }));
    row.appendChild(labelled("条件" + number + " 字段", fieldSel, "rb-field"));
    row.appendChild(labelled("条件" + number + " 运算", opSel, "rb-op"));
    row.appendChild(valueEditor(cond, number));
    row.appendChild(remove);
    if (cond.extra && cond.extra.label) {
      row.appendChild(el("p", { className: "rb-label hint", text: "向企业展示的说明：" + cond.extra.label }));
    }
    return row;
  }

  function renderGroup(group, parent, index, depth) {
    var box = el("div", { className: "rb-group depth-" + depth });
    var head = el("div", { className: "rb-group-head" });
    var typeSel = el("select");
    GROUP_TYPES.forEach(function (t) { typeSel.appendChild(option(t[0], t[1], t[0] === group.type)); });
    typeSel.addEventListener("change", function () { group.type = typeSel.value; changed(true); });
    head.appendChild(labelled(depth === 0 ? "条件组合方式" : "第 " + (depth + 1) + " 层组合方式", typeSel, "rb-type"));

    var addCond = el("button", { type: "button", className: "secondary small", text: "＋ 添加条件" });
    addCond.addEventListener("click", function () {
      var field = "region_code";
      group.children.push({ kind: "cond", field: field, op: opsFor(field)[0], value: defaultValue(field, opsFor(field)[0]), extra: {} });
      changed(true, true);
    });
    head.appendChild(addCond);
    if (depth < schema.limits.depth - 2) {
      var addGroup = el("button", { type: "button", className: "outline small", text: "＋ 添加条件组" });
      addGroup.addEventListener("click", function () {
        group.children.push({ kind: "group", type: "any", children: [], extra: {} });
        changed(true);
      });
      head.appendChild(addGroup);
    }
    if (parent) {
      var removeGroup = el("button", { type: "button", className: "outline secondary small", text: "删除该组" });
      removeGroup.addEventListener("click", function () { parent.children.splice(index, 1); changed(true); });
      head.appendChild(removeGroup);
    }
    box.appendChild(head);
    if (group.children.length === 0) {
      box.appendChild(el("p", { className: "rb-empty muted", text: depth === 0 ? "尚未设置条件：所有企业都将判断为“符合”。点击“添加条件”开始。" : "该组还没有条件。" }));
    }
    var list = el("ol", { className: "rb-list" });
    group.children.forEach(function (child, i) {
      if (child.kind === "cond") { list.appendChild(renderCondition(child, group, i)); }
      else { list.appendChild(el("li", { className: "rb-sub" }, [renderGroup(child, group, i, depth + 1)])); }
    });
    box.appendChild(list);
    return box;
  }

  function render(focusNew) {
    counter = 0;
    uid = 0;
    root.textContent = "";
    root.appendChild(renderGroup(model, null, 0, 0));
    var datalist = el("datalist", { id: "rb-tag-names" });
    schema.tags.forEach(function (t) { datalist.appendChild(option(t.name, t.kind, false)); });
    root.appendChild(datalist);
    if (focusNew) {
      var fields = root.querySelectorAll(".rb-field select");
      if (fields.length) { fields[fields.length - 1].focus(); }
    }
  }

  // ------------------------------------------------------------ syncing and preview

  var timer = null;
  var pending = null;

  function changed(rerender, focusNew) {
    var json = toJSON(model, true);
    textarea.value = json === null ? "" : JSON.stringify(json, null, 2);
    if (rerender) { render(focusNew); }
    schedulePreview();
  }

  function schedulePreview() {
    clearTimeout(timer);
    timer = setTimeout(preview, 350);
  }

  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function showPreview(data) {
    previewBox.textContent = "";
    previewBox.classList.remove("busy-preview");
    if (data.errors && data.errors.length) {
      var errBox = el("div", { className: "preview-errors", role: "alert" }, [el("p", { text: "条件还不完整，暂时无法预览：" })]);
      var ul = el("ul");
      data.errors.forEach(function (e) { ul.appendChild(el("li", { text: e.reason + (e.field && e.field !== "rules" ? "（" + e.field.replace(/^rules\.?/, "") + "）" : "") })); });
      errBox.appendChild(ul);
      previewBox.appendChild(errBox);
      return;
    }
    var total = data.total || 0;
    var p = el("p", { className: "preview-count" });
    p.appendChild(document.createTextNode("按当前条件，" + total + " 家企业中："));
    p.appendChild(el("strong", { className: "c-eligible", "data-count": "eligible", text: "符合 " + data.eligible + " 家" }));
    p.appendChild(document.createTextNode(" · "));
    p.appendChild(el("strong", { className: "c-likely", "data-count": "likely", text: "可能符合 " + data.likely + " 家" }));
    p.appendChild(document.createTextNode(" · "));
    p.appendChild(el("span", { className: "c-ineligible", text: "不符合 " + data.ineligible + " 家" }));
    previewBox.appendChild(p);
    if (total > 0) {
      var bar = el("div", { className: "preview-bar", "aria-hidden": "true" });
      [["eligible", data.eligible], ["likely", data.likely], ["ineligible", data.ineligible]].forEach(function (part) {
        var seg = el("span", { className: "seg-" + part[0] });
        seg.style.width = (100 * part[1] / total) + "%";
        bar.appendChild(seg);
      });
      previewBox.appendChild(bar);
    }
    if (data.text && data.text.length) {
      var list = el("ul", { className: "rules-text" });
      data.text.forEach(function (line) {
        var li = el("li", { text: line.trim() });
        li.style.setProperty("--indent", String((line.length - line.replace(/^\s+/, "").length) / 2));
        list.appendChild(li);
      });
      previewBox.appendChild(el("p", { className: "hint", text: "条件的文字说明：" }));
      previewBox.appendChild(list);
    }
  }

  function preview() {
    if (pending) { pending.abort(); }
    pending = new AbortController();
    previewBox.classList.add("busy-preview");
    fetch(previewUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf(), "Accept": "application/json" },
      body: JSON.stringify({ rules_json: textarea.value }),
      credentials: "same-origin",
      signal: pending.signal
    }).then(function (r) {
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(showPreview).catch(function (err) {
      if (err.name === "AbortError") { return; }
      previewBox.classList.remove("busy-preview");
      previewBox.textContent = "预览暂时不可用（" + err.message + "），保存时仍会校验条件。";
    });
  }

  function loadFromTextarea() {
    var text = textarea.value.trim();
    var notice = root.querySelector(".rb-notice");
    try {
      model = toModel(text ? JSON.parse(text) : null);
      if (model.kind === "cond") { model = { kind: "group", type: "all", children: [model], extra: {} }; }
      root.hidden = false;
      render(false);
      return true;
    } catch (err) {
      root.textContent = "";
      root.appendChild(el("p", { className: "rb-notice notice warn", role: "status", text: (err instanceof SyntaxError ? "JSON 格式有误，修正后条件构建器会重新显示。" : err.message) }));
      root.hidden = false;
      if (notice) { notice.remove(); }
      return false;
    }
  }

  textarea.addEventListener("input", function () {
    loadFromTextarea();
    schedulePreview();
  });

  document.documentElement.classList.add("js-rule-builder");
  Array.prototype.forEach.call(document.querySelectorAll(".no-js-only"), function (b) { b.hidden = true; });
  if (loadFromTextarea() && advanced) { advanced.open = false; }
  preview();
})();
