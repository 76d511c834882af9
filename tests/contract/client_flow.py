"""A user's first session through the client generated from /openapi.json.

Usage: client_flow.py BASE_URL (the generated package `hs_platform_client`
on PYTHONPATH). Signs up, logs in, enqueues a PDF job and waits for it with
`Prefer: wait`, downloads the file; exits non-zero at the first surprise.
"""

import sys
import uuid

from hs_platform_client import AuthenticatedClient, Client
from hs_platform_client.api.files import download_file, generate_pdf
from hs_platform_client.api.sessions import login
from hs_platform_client.api.users import sign_up
from hs_platform_client.models import Document, Job, Login, LoginResponse, SignUp, User


def expect(response, status):
    if response.status_code != status:
        sys.exit(f"expected {status}, got {response.status_code}: {response.content[:500]!r}")
    return response.parsed


def main(base_url):
    email = f"client-{uuid.uuid4().hex}@example.com"
    password = "generated client password"
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

    user = expect(
        sign_up.sync_detailed(
            client=anonymous, body=SignUp(email=email, password=password, name="Generated")
        ),
        201,
    )
    assert isinstance(user, User), user
    assert user.email == email

    session = expect(
        login.sync_detailed(client=anonymous, body=Login(email=email, password=password)), 201
    )
    assert isinstance(session, LoginResponse), session
    client = AuthenticatedClient(
        base_url=base_url, token=session.token, raise_on_unexpected_status=True
    )

    document = Document.from_dict(
        {
            "title": "Made by a generated client",
            "sections": [
                {"type": "heading", "text": "Hello", "level": 1},
                {"type": "paragraph", "text": "From the client generated from /openapi.json."},
            ],
        }
    )
    job = expect(
        generate_pdf.sync_detailed(client=client, body=document, prefer="wait=30"), 200
    )
    assert isinstance(job, Job), job
    assert str(job.status) in ("succeeded", "JobStatus.SUCCEEDED"), job
    file = job.result.additional_properties["file"]

    pdf = download_file.sync_detailed(client=client, file_id=file["id"])
    if pdf.status_code != 200:
        sys.exit(f"download answered {pdf.status_code}")
    if not pdf.content.startswith(b"%PDF-"):
        sys.exit(f"the download is not a PDF: {pdf.content[:20]!r}")
    if len(pdf.content) != file["size"]:
        sys.exit(f"downloaded {len(pdf.content)} bytes, the metadata says {file['size']}")
    print(f"ok: job {job.id} made file {file['id']} ({len(pdf.content)} bytes)")


if __name__ == "__main__":
    main(sys.argv[1])
