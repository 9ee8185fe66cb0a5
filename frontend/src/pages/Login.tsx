import { useState, type FormEvent, type ReactNode } from "react";
import { ApiError, login } from "../api";
import { useErrorText } from "../components/States";
import { useI18n } from "../i18n";

export function LoginPage({ notice }: { notice: "expired" | "logout" | null }): ReactNode {
  const { t, lang, setLang } = useI18n();
  const errorText = useErrorText();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent): Promise<void> => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) setError(t("login.bad"));
      else if (exc instanceof ApiError && exc.status === 429) setError(t("login.locked", { s: exc.retryAfterS ?? 60 }));
      else if (exc instanceof ApiError) setError(errorText(exc));
      else setError(String(exc));
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form className="card login-card" onSubmit={submit} data-testid="login-form">
        <h1>
          <span className="logo" aria-hidden="true">
            ⚡
          </span>{" "}
          SP-E
        </h1>
        <p className="muted">{t("app.title")}</p>
        {notice && !error && (
          <div className="state state-info" role="status" data-testid="login-notice" data-reason={notice}>
            {t(notice === "expired" ? "login.expired" : "login.loggedOut")}
          </div>
        )}
        {error && (
          <div className="state state-error" role="alert" data-testid="login-error">
            {error}
          </div>
        )}
        <label className="field">
          <span>{t("login.username")}</span>
          <input name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
        </label>
        <label className="field">
          <span>{t("login.password")}</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? t("login.busy") : t("login.submit")}
        </button>
        <button type="button" className="link" onClick={() => setLang(lang === "fr" ? "en" : "fr")}>
          {t("lang.switch")}
        </button>
      </form>
    </div>
  );
}
