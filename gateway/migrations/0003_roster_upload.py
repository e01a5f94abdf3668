from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_message_submission_key')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RosterUpload',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('school', fields.ForeignKeyField('models.School', source_field='school_id', db_constraint=True, to_field='id', related_name='roster_uploads', on_delete=OnDelete.CASCADE)),
                ('uploaded_by', fields.ForeignKeyField('models.User', source_field='uploaded_by_id', db_constraint=True, to_field='id', related_name='roster_uploads', on_delete=OnDelete.CASCADE)),
                ('file_name', fields.CharField(default='', max_length=255)),
                ('sha256', fields.CharField(max_length=64)),
                ('format', fields.CharField(max_length=16)),
                ('data', fields.TextField(unique=False)),
                ('rows', fields.IntField(default=0)),
                ('to_create', fields.IntField(default=0)),
                ('to_update', fields.IntField(default=0)),
                ('rejected', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('applied_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('result', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'roster_upload', 'app': 'models', 'indexes': [Index(fields=['school_id', 'created_at'])], 'pk_attr': 'id', 'table_description': 'A roster file an admin uploaded in the School Directory, kept between its preview and applying it.'},
            bases=['Model'],
        ),
    ]
