"""Local stand-ins for other people's APIs: a Slack workspace, a Zendesk account, and
simulated support agents. The demo and the tests drive the product against them; the product
never imports them."""
