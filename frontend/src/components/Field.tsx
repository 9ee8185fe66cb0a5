import type { ReactNode } from "react";

export interface Option {
  value: string;
  label: string;
}

/** A labelled select; ``name`` doubles as the test id (filter-<name>). */
export function Select({
  name,
  label,
  value,
  options,
  onChange,
}: {
  name: string;
  label: string;
  value: string;
  options: Option[];
  onChange: (value: string) => void;
}): ReactNode {
  return (
    <label className="field">
      <span>{label}</span>
      <select name={name} data-testid={`filter-${name}`} value={value} onChange={(e) => onChange(e.target.value)}>
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </label>
  );
}
