import { describe, expect, it } from "vitest";
import { DICTIONARIES, saveLang, savedLang, translate } from "./i18n";

class MemoryStorage {
  data = new Map<string, string>();
  getItem(k: string): string | null {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string): void {
    this.data.set(k, v);
  }
}

describe("i18n", () => {
  it("has every French key in English, none empty", () => {
    const fr = Object.keys(DICTIONARIES.fr).sort();
    expect(Object.keys(DICTIONARIES.en).sort()).toEqual(fr);
    for (const lang of ["fr", "en"] as const) {
      for (const [k, v] of Object.entries(DICTIONARIES[lang])) expect(v.trim(), `${lang}:${k}`).not.toBe("");
    }
  });

  it("uses the same placeholders in both languages", () => {
    const holes = (s: string): string[] => (s.match(/\{\w+\}/g) ?? []).sort();
    for (const [k, v] of Object.entries(DICTIONARIES.fr)) {
      expect(holes(DICTIONARIES.en[k as keyof typeof DICTIONARIES.fr]), k).toEqual(holes(v));
    }
  });

  it("fills placeholders and defaults to French", () => {
    expect(translate("fr", "pred.jobRunning", { pct: 40 })).toBe("Réentraînement en cours : 40 %");
    expect(translate("en", "pred.regenerate")).toBe("Regenerate");
    expect(translate("fr", "pred.regenerate")).toBe("Régénérer");
    expect(savedLang(new MemoryStorage())).toBe("fr");
  });

  it("remembers the choice", () => {
    const storage = new MemoryStorage();
    saveLang(storage, "en");
    expect(savedLang(storage)).toBe("en");
    storage.setItem("spe.lang", "de");
    expect(savedLang(storage)).toBe("fr");
  });
});
