import { useEffect, useMemo, useState, type MouseEvent, type ReactNode } from "react";
import { hasRole, logout, resume, session, type User } from "./api";
import { Loading } from "./components/States";
import type { Lang } from "./format";
import { I18nContext, saveLang, savedLang, translate, useI18n, type Key } from "./i18n";
import { AdminPage } from "./pages/Admin";
import { AlertsPage } from "./pages/Alerts";
import { AnalysisPage } from "./pages/Analysis";
import { CockpitPage } from "./pages/Cockpit";
import { LoginPage } from "./pages/Login";
import { MaintenancePage } from "./pages/Maintenance";
import { PredictionsPage } from "./pages/Predictions";
import { navigate, useLocation } from "./router";
import { UserContext } from "./session";

const storage = typeof localStorage === "undefined" ? null : localStorage;

interface PageDef {
  path: string;
  label: Key;
  render: () => ReactNode;
  admin?: boolean;
}

const PAGES: PageDef[] = [
  { path: "/", label: "nav.cockpit", render: () => <CockpitPage /> },
  { path: "/predictions", label: "nav.predictions", render: () => <PredictionsPage /> },
  { path: "/alerts", label: "nav.alerts", render: () => <AlertsPage /> },
  { path: "/maintenance", label: "nav.maintenance", render: () => <MaintenancePage /> },
  { path: "/analysis", label: "nav.analysis", render: () => <AnalysisPage /> },
  { path: "/admin", label: "nav.admin", render: () => <AdminPage />, admin: true },
];

/** An in-app link: plain <a> for middle-click, history navigation otherwise. */
export function Link({ to, children, className }: { to: string; children: ReactNode; className?: string }): ReactNode {
  const go = (e: MouseEvent<HTMLAnchorElement>): void => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={go} className={className}>
      {children}
    </a>
  );
}

export function App(): ReactNode {
  const [lang, setLangState] = useState<Lang>(() => savedLang(storage));
  const [user, setUser] = useState<User | null>(null);
  const [booting, setBooting] = useState(true);
  const [notice, setNotice] = useState<"expired" | "logout" | null>(null);

  const i18n = useMemo(
    () => ({
      lang,
      t: (key: Key, vars?: Record<string, string | number>) => translate(lang, key, vars),
      setLang: (next: Lang) => {
        saveLang(storage, next);
        setLangState(next);
      },
    }),
    [lang],
  );

  useEffect(() => {
    document.documentElement.lang = lang;
    document.title = translate(lang, "app.title");
  }, [lang]);

  useEffect(
    () =>
      session.subscribe((u, reason) => {
        setUser(u);
        setNotice(reason === "login" ? null : reason);
      }),
    [],
  );

  useEffect(() => {
    resume()
      .then((u) => setUser(u))
      .finally(() => setBooting(false));
  }, []);

  let body: ReactNode;
  if (booting) body = <Loading />;
  else if (!user) body = <LoginPage notice={notice} />;
  else body = <Shell user={user} />;
  return (
    <I18nContext.Provider value={i18n}>
      <UserContext.Provider value={user}>{body}</UserContext.Provider>
    </I18nContext.Provider>
  );
}

function Shell({ user }: { user: User }): ReactNode {
  const { t, lang, setLang } = useI18n();
  const { path } = useLocation();
  useEffect(() => {
    if (path === "/login") navigate("/", true);
  }, [path]);
  const pages = PAGES.filter((p) => !p.admin || hasRole(user, "admin"));
  const page = PAGES.find((p) => p.path === path);
  let content: ReactNode;
  if (path === "/login") content = null;
  else if (!page)
    content = (
      <div className="state state-empty">
        {t("common.notFound")} <Link to="/">{t("common.home")}</Link>
      </div>
    );
  else if (page.admin && !hasRole(user, "admin")) content = <div className="state state-error">{t("admin.adminOnly")}</div>;
  else content = page.render();
  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/" className="brand">
          <span className="logo" aria-hidden="true">
            ⚡
          </span>
          SP-E
        </Link>
        <nav className="nav" aria-label={t("nav.menu")}>
          {pages.map((p) => (
            <Link key={p.path} to={p.path} className={p.path === path ? "active" : undefined}>
              {t(p.label)}
            </Link>
          ))}
        </nav>
        <div className="who">
          <span className="user" data-testid="current-user" data-role={user.role}>
            {user.username} <small>({t(`role.${user.role}` as Key)})</small>
          </span>
          <button type="button" className="ghost" data-testid="lang-switch" onClick={() => setLang(lang === "fr" ? "en" : "fr")}>
            {t("lang.switch")}
          </button>
          <button type="button" className="ghost" data-testid="logout" onClick={() => void logout()}>
            {t("nav.logout")}
          </button>
        </div>
      </header>
      <main className="page" key={path}>
        {content}
      </main>
    </div>
  );
}
