"""Reports: Pareto fronts, trust charts, roofline views and tables as HTML, PNG, SVG, CSV and Markdown."""
