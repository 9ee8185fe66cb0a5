import { createContext, useContext } from "react";
import type { User } from "./api";

export const UserContext = createContext<User | null>(null);

/** The signed-in user (pages are only rendered signed in). */
export function useUser(): User {
  const user = useContext(UserContext);
  if (!user) throw new Error("useUser outside a session");
  return user;
}
