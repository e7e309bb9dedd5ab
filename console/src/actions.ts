/** Every change the console offers: confirmed, made through the REST API, its result said in words. */

import { actualsFromCsv, actualsFromJson, actualsSummary, type ActualsAnswer } from "./actuals";
import { ApiFailure, call } from "./api";

export function notice(text: string, kind: "ok" | "error" = "ok"): void {
  const box = document.getElementById("notice");
  if (!box) return;
  box.hidden = false;
  box.className = `notice notice-${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.textContent = text;
}

/** The page's confirmation dialog; resolves true only for an explicit "Confirm". */
export function confirmed(text: string | undefined): Promise<boolean> {
  const dialog = document.getElementById("confirm") as HTMLDialogElement | null;
  if (!text || !dialog) return Promise.resolve(true);
  (document.getElementById("confirm-text") as HTMLElement).textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function showSecret(secret: string): void {
  const dialog = document.getElementById("secret") as HTMLDialogElement | null;
  const value = document.getElementById("secret-value");
  if (!dialog || !value) return;
  value.textContent = secret;
  dialog.addEventListener("close", () => (value.textContent = ""), { once: true });
  dialog.showModal();
}

async function uploadPackage(file: File): Promise<{ id: string }> {
  const url = `/api/v1/model-packages?filename=${encodeURIComponent(file.name)}`;
  return (await call("POST", url, file)) as { id: string };
}

function formJson(form: HTMLFormElement): Record<string, unknown> {
  const body: Record<string, unknown> = JSON.parse(form.dataset.fixed ?? "{}");
  for (const el of form.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input[name], select[name]")) {
    if (el instanceof HTMLInputElement && (el.type === "file" || el.type === "hidden")) continue;
    if (el.dataset.optional !== undefined && !el.value) continue;
    body[el.name] = el instanceof HTMLInputElement && el.type === "checkbox" ? el.checked : el.value;
  }
  return body;
}

async function submitApi(form: HTMLFormElement): Promise<unknown> {
  if (!(await confirmed(form.dataset.confirm))) return undefined;
  const body = formJson(form);
  const file = form.querySelector<HTMLInputElement>("input[type=file][data-upload-into]");
  if (file?.files?.length) {
    const uploaded = await uploadPackage(file.files[0]);
    body[file.dataset.uploadInto as string] = uploaded.id;
  }
  const answer = (await call(form.dataset.api ?? "POST", form.dataset.url as string, body)) as Record<string, unknown>;
  if (form.dataset.secret && typeof answer?.[form.dataset.secret] === "string") {
    showSecret(answer[form.dataset.secret] as string);
  }
  form.reset();
  return answer;
}

async function submitUpload(form: HTMLFormElement): Promise<unknown> {
  const file = form.querySelector<HTMLInputElement>("input[type=file]")?.files?.[0];
  if (!file) throw new ApiFailure(422, "Choose a file first");
  if (!(await confirmed(form.dataset.confirm))) return undefined;
  const url = form.dataset.upload as string;
  const answer = url.endsWith("/model-packages")
    ? await uploadPackage(file)
    : await call("POST", url, file, file.type || (file.name.endsWith(".json") ? "application/json" : "text/csv"));
  form.reset();
  return answer;
}

/** Actuals: the file parsed here into the API's JSON rows; the answer's counts and refusals said in words. */
async function submitActuals(form: HTMLFormElement): Promise<string[]> {
  const file = form.querySelector<HTMLInputElement>("input[type=file]")?.files?.[0];
  if (!file) throw new ApiFailure(422, "Choose a file first");
  const field = (name: string) => form.querySelector<HTMLInputElement>(`input[name=${name}]`)?.value.trim() || undefined;
  const text = await file.text();
  const csv = !(file.name.toLowerCase().endsWith(".json") || file.type === "application/json");
  let data: unknown[];
  try {
    data = csv ? actualsFromCsv(text, field("idColumn"), field("valueColumn")) : actualsFromJson(text);
  } catch (error) {
    throw new ApiFailure(422, `${file.name}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const answer = (await call("POST", form.dataset.actuals as string, { data })) as ActualsAnswer;
  form.reset();
  return actualsSummary(answer, csv);
}

/** Wires buttons and forms by their data attributes (delegated, so swapped-in content works too). */
export function install(refresh: () => void): void {
  const after = (el: HTMLElement, result: unknown) => {
    if (result === undefined) return;
    notice(el.dataset.done ?? "Done");
    if (el.dataset.then) window.location.assign(el.dataset.then);
    else refresh();
  };
  const failed = (error: unknown) => notice(error instanceof Error ? error.message : String(error), "error");

  document.addEventListener("click", async (event) => {
    const target = event.target as HTMLElement;
    const copy = target.closest<HTMLElement>("[data-copy-from]");
    if (copy) {
      const text = document.getElementById(copy.dataset.copyFrom as string)?.textContent ?? "";
      try {
        await navigator.clipboard.writeText(text);
        notice("Copied");
      } catch {
        notice("Copying is not allowed here: select the text and copy it yourself", "error");
      }
      return;
    }
    const button = target.closest<HTMLButtonElement>("button[data-action]");
    if (!button) return;
    if (!(await confirmed(button.dataset.confirm))) return;
    button.disabled = true;
    try {
      after(button, await call(button.dataset.action as string, button.dataset.url as string));
    } catch (error) {
      failed(error);
    } finally {
      button.disabled = false;
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target as HTMLFormElement;
    if (form.dataset.api === undefined && form.dataset.upload === undefined && form.dataset.actuals === undefined) return;
    event.preventDefault();
    const submit = form.querySelector<HTMLButtonElement>("button[type=submit]");
    if (submit) submit.disabled = true;
    try {
      if (form.dataset.actuals !== undefined) {
        const lines = await submitActuals(form);
        notice(lines.join("\n"), lines.length > 1 ? "error" : "ok");
        refresh();
      } else {
        after(form, form.dataset.api !== undefined ? await submitApi(form) : await submitUpload(form));
      }
    } catch (error) {
      failed(error);
    } finally {
      if (submit) submit.disabled = false;
    }
  });
}
